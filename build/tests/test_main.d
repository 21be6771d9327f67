build/tests/test_main.o: tests/test_main.c tests/test.h include/ramole.h
tests/test.h:
include/ramole.h:
