build-tsan/storage/db.o: storage/db.c storage/../common/common.h \
 storage/storage.h
storage/../common/common.h:
storage/storage.h:
