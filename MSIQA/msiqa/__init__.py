"""MS-IQA: multi-scale image-quality assessment for PET/CT.

The engine is GUI-free: the Slicer module (MSIQA.py) and the command line both call it.
Data flows one way: file or MRML node -> volume arrays -> slice renderings -> network ->
scores and maps -> file or MRML nodes.
"""

__version__ = "0.1.0"
