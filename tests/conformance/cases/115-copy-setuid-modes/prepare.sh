chmod 4755 suid
chmod 1777 sticky
