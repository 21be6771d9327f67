build/src/core/error.o: src/core/error.c src/core/core.h include/ramole.h
src/core/core.h:
include/ramole.h:
