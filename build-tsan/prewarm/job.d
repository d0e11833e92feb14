build-tsan/prewarm/job.o: prewarm/job.c prewarm/../common/common.h \
 prewarm/internal.h prewarm/prewarm.h prewarm/../registry/registry.h \
 prewarm/../registry/../storage/storage.h
prewarm/../common/common.h:
prewarm/internal.h:
prewarm/prewarm.h:
prewarm/../registry/registry.h:
prewarm/../registry/../storage/storage.h:
