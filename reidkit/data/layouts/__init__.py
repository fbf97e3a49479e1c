"""The dataset layouts reidkit reads, one module per layout family: the Market-1501 family
(Market-1501, DukeMTMC-reID), MSMT17, CUHK03, MARS, DukeMTMC-VideoReID, iLIDS-VID, PRID2011,
and a plain folder of images. Each turns a folder into a :class:`reidkit.data.Dataset` and
declares itself with a :class:`reidkit.data.DatasetSpec`; :mod:`reidkit.data.catalog`
registers them."""
