#ifndef FLYWHEEL_GREET_H
#define FLYWHEEL_GREET_H

const char *flywheel_greeting(void);

#endif
