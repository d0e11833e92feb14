# Not a size: refused by evaluation, naming the option.
{ maxBytes = "20 gigabytes"; }
