build-tsan/registry/upstream.o: registry/upstream.c \
 registry/../common/common.h registry/registry.h \
 registry/../storage/storage.h
registry/../common/common.h:
registry/registry.h:
registry/../storage/storage.h:
