build-tsan/registry/route.o: registry/route.c registry/../common/common.h \
 registry/registry.h registry/../storage/storage.h
registry/../common/common.h:
registry/registry.h:
registry/../storage/storage.h:
