"""Image datasets. Each module is imported only when one of its datasets is used:

* :mod:`~alscope_cv.datasets.digits`: MNIST, Fashion-MNIST, EMNIST (IDX files)
* :mod:`~alscope_cv.datasets.cifar`: CIFAR-10, CIFAR-100 (python pickle batches)
* :mod:`~alscope_cv.datasets.svhn`: SVHN (``.mat`` files)
* :mod:`~alscope_cv.datasets.medmnist`: the 2D MedMNIST subsets (``.npz`` files)
* :mod:`~alscope_cv.datasets.folders`: your own ImageFolder and Tiny ImageNet (image files)
"""
