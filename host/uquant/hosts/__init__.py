"""Host-side runners that execute generated code inside a real MicroPython interpreter."""
