"""bioplaus: biologically-plausible local learning, written out by hand.

NumPy/CuPy reference implementation of the local learning rules of
Nøkland & Eidnes (ICML 2019) and Mostafa, Ramesh & Cauwenberghs (2018):
every forward function and every weight update is explicit code.
"""
__version__ = "0.1.0"
