mkdir -p t/d && echo in-tar > t/d/f && echo top > t/top && chmod 0700 t/d && ln -s d/f t/link
tar --owner=0 --group=0 --numeric-owner -C t -cf archive.tar .
rm -rf t
