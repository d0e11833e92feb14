build-tsan/storage/blobstore.o: storage/blobstore.c \
 storage/../common/common.h storage/storage.h
storage/../common/common.h:
storage/storage.h:
