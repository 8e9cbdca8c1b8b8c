mkdir -p empty tree/a/b
chmod 0700 tree/a
