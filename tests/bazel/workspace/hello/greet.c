#include "hello/greet.h"
#include "message.h"

const char *flywheel_greeting(void) { return FLYWHEEL_MESSAGE; }
