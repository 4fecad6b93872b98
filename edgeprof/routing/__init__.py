"""Hybrid routing replayed over stored runs (`edgeprof route`, docs/hybrid.md): the device
answers and the requests it is unsure of go to the cloud, evaluated from a device run and a
cloud run of the same graded suite, without generating again. Thresholds are chosen on some
prompts and reported on the others (k-fold), and every policy is priced as the verdict prices
the device, plus the cloud tokens of the requests it sends there."""
