build/src/core/log.o: src/core/log.c src/core/core.h include/ramole.h
src/core/core.h:
include/ramole.h:
