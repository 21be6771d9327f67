build/tools/ramole.o: tools/ramole.c include/ramole.h
include/ramole.h:
