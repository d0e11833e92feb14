build-tsan/prewarm/record.o: prewarm/record.c prewarm/../common/common.h \
 prewarm/prewarm.h prewarm/../registry/registry.h \
 prewarm/../registry/../storage/storage.h
prewarm/../common/common.h:
prewarm/prewarm.h:
prewarm/../registry/registry.h:
prewarm/../registry/../storage/storage.h:
