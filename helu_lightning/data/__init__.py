"""DataModules reading the real on-disk formats (CIFAR pickles, ImageFolder, IDX, GLUE TSV) and offline sets."""
