"""The conventions, each with one owner, that training data, every runtime and every score
share: the point order and label normalisation (`labels`), image decoding and the network
input (`images`), the level-2 crop rules and the second look's face box (`crop`), the error
measures (`metrics`) and how points are drawn (`draw`).

May import: landmarks.common.
"""
