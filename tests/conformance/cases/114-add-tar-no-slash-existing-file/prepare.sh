mkdir -p t1 t2 && echo one > t1/one && echo two > t2/two && echo over1 > t1/same && echo over2 > t2/same
tar --owner=0 --group=0 --numeric-owner -C t1 -cf one.tar .
tar --owner=0 --group=0 --numeric-owner -C t2 -cf two.tar .
rm -rf t1 t2
