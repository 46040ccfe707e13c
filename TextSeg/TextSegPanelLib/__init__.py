"""Plain-Qt panel of the TextSeg module (PythonQt in Slicer, PySide6 in tests)."""
