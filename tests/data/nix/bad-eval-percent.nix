{ minFree = "150%"; }
