build/src/core/alloc.o: src/core/alloc.c src/core/core.h include/ramole.h
src/core/core.h:
include/ramole.h:
