module leakscope.test/layoutprobe

go 1.21
