#include <stdio.h>

#include "hello/greet.h"

int main(void) {
  puts(flywheel_greeting());
  return 0;
}
