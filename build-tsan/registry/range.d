build-tsan/registry/range.o: registry/range.c registry/registry.h \
 registry/../storage/storage.h
registry/registry.h:
registry/../storage/storage.h:
