"""Language models: conversion of other libraries' checkpoints (:mod:`.convert_fla`)."""
