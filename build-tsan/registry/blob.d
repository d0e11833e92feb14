build-tsan/registry/blob.o: registry/blob.c registry/../common/common.h \
 registry/internal.h registry/registry.h registry/../storage/storage.h
registry/../common/common.h:
registry/internal.h:
registry/registry.h:
registry/../storage/storage.h:
