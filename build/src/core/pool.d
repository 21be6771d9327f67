build/src/core/pool.o: src/core/pool.c src/core/core.h include/ramole.h
src/core/core.h:
include/ramole.h:
