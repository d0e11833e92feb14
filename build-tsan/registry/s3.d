build-tsan/registry/s3.o: registry/s3.c registry/../common/common.h \
 registry/registry.h registry/../storage/storage.h
registry/../common/common.h:
registry/registry.h:
registry/../storage/storage.h:
