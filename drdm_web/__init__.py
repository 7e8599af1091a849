"""``drdm web``: the DRDM deformation generator in a browser, on Kitware's trame-slicer (the Slicer core's MRML
scene with its slice and 3D views, served to any workstation's browser).

The page is a thin front end on :class:`DRDMSlicerLib.logic.DeformationLogic`, the same logic the Slicer module
uses: generation, MRML outputs, view state and export are implemented there once.
"""
