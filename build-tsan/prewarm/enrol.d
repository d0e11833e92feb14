build-tsan/prewarm/enrol.o: prewarm/enrol.c prewarm/../common/common.h \
 prewarm/internal.h prewarm/prewarm.h prewarm/../registry/registry.h \
 prewarm/../registry/../storage/storage.h
prewarm/../common/common.h:
prewarm/internal.h:
prewarm/prewarm.h:
prewarm/../registry/registry.h:
prewarm/../registry/../storage/storage.h:
