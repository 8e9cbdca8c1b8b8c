mkdir -p t && echo x > t/x
tar --owner=0 --group=0 --numeric-owner --mtime=@1700000000 -C t -cf archive.tar .
rm -rf t
