build-tsan/registry/tags.o: registry/tags.c registry/../common/common.h \
 registry/internal.h registry/registry.h registry/../storage/storage.h
registry/../common/common.h:
registry/internal.h:
registry/registry.h:
registry/../storage/storage.h:
