"""Registration: Algorithm 4 (pairs with a ground-truth transform), the numerical inverse of a field, and scoring a
registration tool's predicted transforms against that ground truth (metrics, report). Entry points:
:func:`drdm.synthesize`, :func:`drdm.evaluate`."""
