r"""
@article{Nguyen2021,
  title = {Finding {Nano-{\"O}tzi}: Semi-Supervised Volume Visualization for Cryo-Electron
      Tomography},
  author = {Nguyen, Ngan and Bohak, Ciril and Engel, Dominik and Mindek, Peter and Strnad,
      Ond{\v{r}}ej and Wonka, Peter and Li, Sai and Ropinski, Timo and Viola, Ivan},
  journal = {arXiv preprint},
  year = {2021},
  eprint = {2104.01554},
  archivePrefix = {arXiv},
  url = {https://arxiv.org/abs/2104.01554}
}

@inproceedings{Gubins2021,
  title = {{SHREC} 2021: Classification in Cryo-Electron Tomograms},
  author = {Gubins, Ilja and Chaillet, Marten L. and van der Schot, Gijs and Trueba, M. Cristina
      and Veltkamp, Remco C. and F{\"o}rster, Friedrich and Wang, Xiao and Kihara, Daisuke and
      Moebel, Emmanuel and Nguyen, Nguyen P. and White, Tommi and Bunyak, Filiz and Papoulias,
      Giorgos and Gerolymatos, Stavros and Zacharaki, Evangelia I. and Moustakas, Konstantinos
      and Zeng, Xiangrui and Liu, Sinuo and Xu, Min and Wang, Yaoyu and Chen, Cheng and Cui,
      Xuefeng and Zhang, Fa},
  booktitle = {Eurographics Workshop on 3D Object Retrieval},
  publisher = {The Eurographics Association},
  year = {2021},
  doi = {10.2312/3dor.20211307}
}

@article{Zhou2023,
  title = {A machine learning pipeline for membrane segmentation of cryo-electron tomograms},
  author = {Zhou, Li and Yang, Chao and Gao, Weiguo and Perciano, Talita and Davies, Karen M. and
      Sauter, Nicholas K.},
  journal = {Journal of Computational Science},
  volume = {66},
  pages = {101904},
  year = {2023},
  doi = {10.1016/j.jocs.2022.101904}
}

@article{Lamm2024,
  title = {{MemBrain} v2: an end-to-end tool for the analysis of membranes in cryo-electron
      tomography},
  author = {Lamm, Lorenz and Zufferey, Simon and Righetto, Ricardo D. and Wietrzynski, Wojciech
      and Yamauchi, Kevin A. and Burt, Alister and Liu, Ye and Zhang, Hanyi and
      Martinez-Sanchez, Antonio and Ziegler, Sebastian and Isensee, Fabian and Schnabel, Julia
      A. and Engel, Benjamin D. and Peng, Tingying},
  journal = {bioRxiv},
  year = {2024},
  doi = {10.1101/2024.01.05.574336}
}

@inproceedings{Liu2018,
  title = {Multi-task Learning for Macromolecule Classification, Segmentation and Coarse
      Structural Recovery in Cryo-Tomography},
  author = {Liu, Chang and Zeng, Xiangrui and Wang, Kai Wen and Guo, Qiang and Xu, Min},
  booktitle = {British Machine Vision Conference (BMVC)},
  year = {2018},
  eprint = {1805.06332},
  archivePrefix = {arXiv},
  url = {https://arxiv.org/abs/1805.06332}
}

@article{Bharat2016,
  title = {Resolving macromolecular structures from electron cryo-tomography data using
      subtomogram averaging in {RELION}},
  author = {Bharat, Tanmay A. M. and Scheres, Sjors H. W.},
  journal = {Nature Protocols},
  volume = {11},
  pages = {2054--2065},
  year = {2016},
  doi = {10.1038/nprot.2016.124}
}
"""
