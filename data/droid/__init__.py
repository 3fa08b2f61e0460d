"""DROID"""
