build-tsan/prewarm/recipe.o: prewarm/recipe.c prewarm/../common/common.h \
 prewarm/prewarm.h prewarm/../registry/registry.h \
 prewarm/../registry/../storage/storage.h
prewarm/../common/common.h:
prewarm/prewarm.h:
prewarm/../registry/registry.h:
prewarm/../registry/../storage/storage.h:
