mkdir -p t && echo compressed > t/c && echo more > t/m
tar --owner=0 --group=0 --numeric-owner -C t -czf archive.tar.gz .
tar --owner=0 --group=0 --numeric-owner -C t -cjf archive.tar.bz2 .
tar --owner=0 --group=0 --numeric-owner -C t -cJf archive.tar.xz .
rm -rf t
