mkdir dir && echo shared > dir/a && ln dir/a dir/b
