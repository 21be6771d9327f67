build/tests/test_core.o: tests/test_core.c tests/test.h include/ramole.h \
 src/core/core.h
tests/test.h:
include/ramole.h:
src/core/core.h:
