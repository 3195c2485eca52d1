module leakscope.test/leakycgo

go 1.21
