build-tsan/registry/pool.o: registry/pool.c registry/../common/common.h \
 registry/registry.h registry/../storage/storage.h
registry/../common/common.h:
registry/registry.h:
registry/../storage/storage.h:
