build-tsan/registry/oci.o: registry/oci.c registry/../common/common.h \
 registry/registry.h registry/../storage/storage.h
registry/../common/common.h:
registry/registry.h:
registry/../storage/storage.h:
