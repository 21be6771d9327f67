build/src/core/file.o: src/core/file.c src/core/core.h include/ramole.h
src/core/core.h:
include/ramole.h:
