module leakscope.test/leaky

go 1.21
