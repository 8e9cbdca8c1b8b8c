ln -s target.txt link.txt
ln -s real.txt dir/rel-link
ln -s /etc/motd dir/abs-link
ln -s missing dir/dangling
