chmod 0750 exec.sh
chmod 0600 private
chmod 0711 dir
chmod 0444 dir/f
chmod 0644 Dockerfile
