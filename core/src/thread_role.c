#include "thread_role.h"

static _Thread_local const void *serving;

void thread_role_set(const void *owner) { serving = owner; }

bool thread_role_serves(const void *owner) { return owner && serving == owner; }
