/* Header-only module: the structs live in include/. */
