build-tsan/registry/auth.o: registry/auth.c registry/../common/common.h \
 registry/registry.h registry/../storage/storage.h
registry/../common/common.h:
registry/registry.h:
registry/../storage/storage.h:
