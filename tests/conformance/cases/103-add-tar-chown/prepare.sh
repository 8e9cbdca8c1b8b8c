mkdir -p t/d && echo in > t/d/f
tar --owner=0 --group=0 --numeric-owner -C t -cf archive.tar .
rm -rf t
