"""The physical-space layer: SimpleITK files, the model's working grid and back, one deformation of an image in
millimetres, field statistics, the coherent slice stack of a 2D model on a volume, segment volumes, the QA picture,
the sample folder and Algorithm 3 over a data set. Entry points: :func:`drdm.deform_image`, :func:`drdm.augment`."""
